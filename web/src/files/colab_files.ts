// Placeholder: helper WEB-B registers the files.upload()/files.download() support here.
export {};
