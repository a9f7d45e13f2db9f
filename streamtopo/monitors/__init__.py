"""Monitors: stateful objects that take a training signal each step and return a status."""
