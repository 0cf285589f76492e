"""Fake aclruntime: present so the distribution is found; the fake interface needs nothing from it."""
