"""HTTP: the route table, endpoints grouped by audience, error rendering, cookies and page templates."""
