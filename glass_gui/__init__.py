"""GLASS Studio: the PySide6 desktop application on top of glass_engine."""
