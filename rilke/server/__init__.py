"""rilke.server"""
