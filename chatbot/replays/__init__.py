"""Replays: past questions asked again of another flow or version, in the background, and compared side by side."""
