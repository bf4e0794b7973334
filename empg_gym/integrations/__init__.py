"""Adapters from empg-gym's contracts to other training engines, one folder per engine (``verl/``).

An integration is the only code that imports its engine; importing ``empg_gym`` never imports one.
"""
