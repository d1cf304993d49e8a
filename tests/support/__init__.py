"""Real test fixtures: a throwaway PostgreSQL server, free ports, bounded waits."""
