"""Everything the broker keeps: Redis only. `redis.py` is the only module that imports the Redis client."""
