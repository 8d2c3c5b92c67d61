"""Errors of the inference layer, free of Django and tritonclient imports
(Triton's model.py and the in-process engine raise them too)."""


class InferenceError(Exception):
    """Base class: something went wrong producing or scoring a text."""


class InvalidRequest(InferenceError):
    """The request itself is wrong (empty messages, max_tokens out of range, bad guidance...).
    Retrying will not help."""


class BackendUnavailable(InferenceError):
    """The backend could not be reached or timed out: transient, worth retrying."""


class BackendRefused(InferenceError):
    """The server refused us as configured: a wrong API key, no permission, no such model.
    Retrying will not help; the endpoint's settings must change."""


class ModelNotReady(InferenceError):
    """The server answers but the model is not loaded or its instance crashed."""


class JudgeOutputError(InferenceError):
    """The judge's answer did not parse into scores. Keeps the raw text so it can be recorded."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


class IncompleteBatch(InferenceError):
    """The backend returned fewer completions than asked: the missing slots are a failure."""
