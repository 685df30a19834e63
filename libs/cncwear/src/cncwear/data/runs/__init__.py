"""Labelled runs: what a mill streamed during one job, labelled worn or unworn afterwards, kept in a
shared store, checked before it may train a model, and gathered into immutable dataset versions."""
