"""See the package docstring of eqprop."""
