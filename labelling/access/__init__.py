"""Who may do what: the two roles (reviewers rate; admins also define, run and export), the
decorators pages check them with, API tokens (stored hashed, shown once, revocable), and the
login throttle (failed sign-ins per account and per address)."""
