"""A minimal Django project for the ferropool backend tests: one app
(``notes``), a handful of views, settings read from the environment that
the test fixture sets (the test server and a database made for the run)."""
