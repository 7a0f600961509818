"""rilke.cli"""
