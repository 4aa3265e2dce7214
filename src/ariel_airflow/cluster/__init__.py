"""The platform side: environments, the team registry and capacity."""
