"""Smart Turn v3.2 (BSD-2-Clause, see LICENSE): a package of its own so setuptools installs its files as data."""
