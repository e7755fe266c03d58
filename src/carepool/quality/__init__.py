"""Data quality: checks written once in Ibis (conformance, completeness, plausibility,
timeliness, cross-member consistency), runs with history, scorecards per member, alerts."""
