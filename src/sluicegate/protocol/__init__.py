"""Wire formats and pure translation: no I/O here."""
