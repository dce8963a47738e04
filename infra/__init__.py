"""The production deployment: a CDK app with one stack composed of small constructs."""
