"""Who may do what: the two roles (reviewers rate; admins also define, run and export), the
decorators pages check them with, and API tokens (stored hashed, shown once, revocable)."""
