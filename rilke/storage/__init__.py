"""rilke.storage"""
