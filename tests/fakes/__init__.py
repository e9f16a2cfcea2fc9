"""Fake upstreams written as real HTTP servers, including ones that misbehave on purpose."""
