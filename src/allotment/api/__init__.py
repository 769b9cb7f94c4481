"""The HTTP shell: wire schemas, authentication, routes and the one table of errors."""
