"""How a command runs: its logging, its errors as one paragraph, signals, privacy, and the check
that it runs its own workspace's code. Commands use it; the library below never imports it."""
