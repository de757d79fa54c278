"""Everything that talks to the Braket API: facts about the service and the client."""
