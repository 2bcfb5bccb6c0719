"""Wiring of the stages for one pull run or one push micro-batch."""
