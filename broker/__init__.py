"""tiktok-broker: an identity broker that puts "Log in with TikTok" in front of a company's services."""

__version__ = "0.1.0"
