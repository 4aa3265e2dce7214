"""The platform's cluster: its environments, node pools and what they hold."""
