"""Cloud providers behind one protocol. Importing this package never imports boto3."""
