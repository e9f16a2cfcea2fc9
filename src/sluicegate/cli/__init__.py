"""The ``sluicegate`` command."""
