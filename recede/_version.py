"""The package version, in a leaf so that any module may read it without importing the facade."""

__version__ = "0.1.0"
