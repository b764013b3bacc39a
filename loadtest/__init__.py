"""Load kit: the locust mix, the overload run at 4x capacity, the soak."""
