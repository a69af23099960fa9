package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/supapool/supapool/internal/catalog"
)

// fetchCategories is the request of mode (c): the same GET as
// catalog.List, with the headers that matter to PostgREST and the
// gateway, built by hand and decoded into the same structs.
func fetchCategories(ctx context.Context, hc *http.Client, u, key string) ([]catalog.Category, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	setHeaders(req, key)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	var out []catalog.Category
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	// Read what the decoder left (a newline at most), so that the
	// connection goes back to the transport's idle pool.
	_, _ = io.Copy(io.Discard, resp.Body)
	return out, nil
}

func setHeaders(req *http.Request, key string) {
	req.Header.Set("apikey", key)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Profile", "public")
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, bytes.TrimSpace(b))
}

// countCategories returns how many categories t's budget has; every
// request of the load test must return exactly that many.
func countCategories(ctx context.Context, t target) (int, error) {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cats, err := fetchCategories(ctx, &http.Client{Transport: tr}, catalog.ListURL(t.url, t.budgetID), t.key)
	if err != nil {
		return 0, fmt.Errorf("read the budget's categories: %w", err)
	}
	return len(cats), nil
}

// seedCategories are the rows seed creates: a realistic monthly budget.
var seedCategories = []struct {
	group, name string
	income      bool
}{
	{"Income", "Salary", true}, {"Income", "Side projects", true}, {"Income", "Interest", true},
	{"Home", "Rent", false}, {"Home", "Electricity", false}, {"Home", "Water", false},
	{"Home", "Internet", false}, {"Home", "Insurance", false},
	{"Living", "Groceries", false}, {"Living", "Eating out", false}, {"Living", "Clothing", false},
	{"Living", "Health", false}, {"Living", "Phone", false},
	{"Transport", "Public transport", false}, {"Transport", "Fuel", false}, {"Transport", "Car repairs", false},
	{"Fun", "Hobbies", false}, {"Fun", "Subscriptions", false}, {"Fun", "Travel", false},
	{"Savings", "Emergency fund", false},
}

const seedOwner = "supapool-loadtest"

// seed creates a budget with len(seedCategories) categories through the
// REST API with key, and returns its id and a function that deletes it
// again (its categories go with it: on delete cascade).
func seed(ctx context.Context, baseURL, key string) (budgetID string, unseed func(context.Context) error, err error) {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	var budgets []struct {
		ID string `json:"id"`
	}
	err = post(ctx, hc, baseURL+"/rest/v1/budgets", key, "return=representation",
		map[string]string{"name": "supapool load test", "owner_id": seedOwner}, &budgets)
	if err != nil {
		return "", nil, fmt.Errorf("seed a budget: %w", err)
	}
	if len(budgets) != 1 {
		return "", nil, fmt.Errorf("seed a budget: got %d rows back", len(budgets))
	}
	budgetID = budgets[0].ID
	unseed = func(ctx context.Context) error {
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, baseURL+"/rest/v1/budgets?id=eq."+budgetID, nil)
		if err != nil {
			return err
		}
		setHeaders(req, key)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return fmt.Errorf("delete the seeded budget %s: %w", budgetID, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("delete the seeded budget: %w", statusError(resp))
		}
		return nil
	}

	rows := make([]catalog.NewCategory, len(seedCategories))
	for i, c := range seedCategories {
		rows[i] = catalog.NewCategory{
			BudgetID: budgetID, OwnerID: seedOwner, Name: c.name,
			GroupName: &c.group, SortOrder: i + 1, IsIncome: c.income,
		}
	}
	if err := post(ctx, hc, baseURL+"/rest/v1/categories", key, "return=minimal", rows, nil); err != nil {
		err = fmt.Errorf("seed categories: %w", err)
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if uerr := unseed(c); uerr != nil {
			err = fmt.Errorf("%w; %w", err, uerr)
		}
		return "", nil, err
	}
	return budgetID, unseed, nil
}

// post sends body as JSON and decodes the answer into out, unless out is nil.
func post(ctx context.Context, hc *http.Client, u, key, prefer string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	setHeaders(req, key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Profile", "public")
	req.Header.Set("Prefer", prefer)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// redactURL drops a URL's user info, if any, for printing.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
