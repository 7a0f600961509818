"""rilke.records"""
