"""`ariel check`: the platform rules on a team repository, as CI runs them."""
