"""attnkit: build, train, explain and measure attention models."""

__version__ = "0.1.0"
