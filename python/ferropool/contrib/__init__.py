"""Integrations with frameworks: ``contrib.django`` (a database backend) and
``contrib.sqlalchemy`` (a SQLAlchemy pool class). Each imports its framework,
so import the one you use; nothing here is imported by ``ferropool`` itself."""
