"""Collection, classification and unit configuration, installed with kms as `kms.index_config`."""
