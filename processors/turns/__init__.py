"""Turn-taking: when the user has finished speaking (the end-of-turn model lives here)."""
