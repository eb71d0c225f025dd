"""The project's user-facing error types.

A user error (bad config, missing data, missing checkpoint) raises one of these.
`main.py` prints it as a single line on stderr and exits with code 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Base class for errors caused by user input rather than a bug."""


class ConfigError(UserError):
  """A config field has a bad value or an unknown name."""


class DataError(UserError):
  """A dataset cannot be found, read or prepared."""


class CheckpointError(UserError):
  """A checkpoint is missing or does not match the config."""


class TrainingError(UserError):
  """Training cannot continue (for example a NaN loss)."""


def lookup(registry: dict, name: str, field: str):
  """Returns `registry[name]` or raises a ConfigError listing the valid names."""
  try:
    return registry[name]
  except KeyError:
    valid = ', '.join(sorted(registry))
    raise ConfigError(f'{field}={name!r} is unknown; valid: {valid}') from None
