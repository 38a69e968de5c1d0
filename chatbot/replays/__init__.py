"""Replays: past questions asked again of another flow in the background, compared side by side."""
