"""eval: interactivity metrics computed from what a listener hears."""
