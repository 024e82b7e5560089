"""golf: a research lab for the Parameter Golf challenge."""
