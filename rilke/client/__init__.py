"""rilke.client"""
