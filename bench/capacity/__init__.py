"""The capacity benchmark's parts (run it as `python bench/capacity.py`; see its docstring)."""
