"""Retrieval: candidate sources that propose a few hundred items per user from the whole
catalogue, point-in-time, before the learned ranker orders them (the first of two stages).
"""
