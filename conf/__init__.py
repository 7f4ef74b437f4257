"""Hydra configuration of the project: YAML presets in the groups below and their dataclass
schemas (`conf.schema`), registered in Hydra's ConfigStore so that a typo or a wrong type fails
at composition with the key's name. Shipped inside the installed package (`pkg://conf`)."""
