"""Pure rules of jitgate. Imports only the standard library; never reads a clock."""
