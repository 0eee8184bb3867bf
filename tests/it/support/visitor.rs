//! A browser without a screen: it keeps cookies per name and follows redirects by hand
//! across sam and the GitHub stand-in, so tests see every hop.

use reqwest::header::LOCATION;

/// What a visit ended on.
pub struct Visit {
    pub status: reqwest::StatusCode,
    pub url: String,
    pub body: String,
}

/// A person's browser.
#[derive(Default)]
pub struct Visitor {
    cookies: Vec<String>,
}

impl Visitor {
    /// Goes to `url` (GET), following up to ten redirects; relative ones resolve against
    /// the URL that sent them.
    pub async fn get(&mut self, url: &str) -> Visit {
        self.send(reqwest::Method::GET, url, None).await
    }

    /// Submits a form (POST, url-encoded) to `url`, then follows the redirects.
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Visit {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(reqwest::Method::POST, url, Some(body)).await
    }

    /// The cookie named `name`, as `name=value`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }

    async fn send(&mut self, method: reqwest::Method, url: &str, form: Option<String>) -> Visit {
        let client = super::http_client();
        let mut url = url::Url::parse(url).expect("an absolute URL");
        let mut method = method;
        let mut form = form;
        for _ in 0..10 {
            let mut request = client.request(method.clone(), url.clone());
            if !self.cookies.is_empty() {
                request = request.header("cookie", self.cookies.join("; "));
            }
            if let Some(body) = form.take() {
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
            }
            let response = request.send().await.expect("a request");
            for value in response.headers().get_all("set-cookie") {
                let text = value.to_str().expect("a text cookie");
                let pair = text.split(';').next().expect("a pair").trim().to_owned();
                let name = pair.split('=').next().expect("a name").to_owned();
                self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
                // An emptied cookie is a removed one.
                if !pair.ends_with('=') {
                    self.cookies.push(pair);
                }
            }
            match response.headers().get(LOCATION) {
                Some(location) if response.status().is_redirection() => {
                    url = url
                        .join(location.to_str().expect("a text location"))
                        .expect("a valid location");
                    method = reqwest::Method::GET;
                }
                _ => {
                    return Visit {
                        status: response.status(),
                        url: url.to_string(),
                        body: response.text().await.unwrap_or_default(),
                    };
                }
            }
        }
        panic!("more than ten redirects from {url}");
    }
}

/// The value of the first `attribute="…"` after `marker` in an HTML page, unescaped.
pub fn attribute_after(html: &str, marker: &str, attribute: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let start = rest.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    let end = rest[start..].find('"')? + start;
    Some(unescape(&rest[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}
