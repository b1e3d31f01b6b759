"""Gen2 deprecation switch: when `always_warn` is true, constructing a Butler warns."""

#: When true, every Butler construction emits a `FutureWarning`.
always_warn = False
