"""Simulated warehouse hardware that speaks the real wire protocols, with ground truth for scoring."""
