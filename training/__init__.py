"""Offline half: train LSTM, GRU and WaveNet forecasters and export them to the model repository.

The only package that imports TensorFlow; the service reads what it writes (docs/model-repository.md).
"""
