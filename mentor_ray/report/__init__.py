"""Results: the Parquet results store and the leaderboard built from it."""
