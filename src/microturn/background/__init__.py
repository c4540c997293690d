"""background: the asynchronous background model (tasks, tools, agents)."""
