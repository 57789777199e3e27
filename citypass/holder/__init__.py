"""Holder tools: what a visitor's phone does — keep a holder key, show dynamic presentations."""
