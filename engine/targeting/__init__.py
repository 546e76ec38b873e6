"""Targeting: uplift from a randomised campaign table to segments, a budgeted contact
policy and served decisions (engine.stages.target runs it)."""
